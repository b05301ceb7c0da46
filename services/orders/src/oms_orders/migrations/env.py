from oms_orders.tables import metadata
from oms_platform.migrations import run_env

run_env(metadata)
