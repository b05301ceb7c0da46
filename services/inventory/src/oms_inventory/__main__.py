from oms_platform.cli import main

from oms_inventory.app import DEFINITION, MIGRATIONS

main(DEFINITION, MIGRATIONS)
