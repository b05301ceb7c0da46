from oms_platform.cli import main

from oms_fulfilment.app import DEFINITION, MIGRATIONS

main(DEFINITION, MIGRATIONS)
