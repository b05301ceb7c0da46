from oms_gateway.cli import main

main()
