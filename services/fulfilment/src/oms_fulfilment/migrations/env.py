from oms_fulfilment.tables import metadata
from oms_platform.migrations import run_env

run_env(metadata)
