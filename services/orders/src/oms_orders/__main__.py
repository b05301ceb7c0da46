from oms_platform.cli import main

from oms_orders.app import DEFINITION, MIGRATIONS

main(DEFINITION, MIGRATIONS)
