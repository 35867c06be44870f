from tcplens.views.cli import main

main()
