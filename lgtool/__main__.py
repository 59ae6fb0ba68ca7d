from lgtool.cli import main

main()
