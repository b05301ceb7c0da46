from oms_platform.cli import main

from oms_shipping.app import DEFINITION, MIGRATIONS

main(DEFINITION, MIGRATIONS)
