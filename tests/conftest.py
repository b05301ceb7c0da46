pytest_plugins = ["oms_devtools.pytest_plugin"]
