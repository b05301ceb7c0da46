from oms_platform.migrations import run_env
from oms_shipping.tables import metadata

run_env(metadata)
