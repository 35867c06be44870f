from tcplens.cli import main

main()
