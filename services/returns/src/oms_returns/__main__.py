from oms_platform.cli import main

from oms_returns.app import DEFINITION, MIGRATIONS

main(DEFINITION, MIGRATIONS)
