from oms_platform.migrations import run_env
from oms_returns.tables import metadata

run_env(metadata)
