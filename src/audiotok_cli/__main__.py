from audiotok_cli.cli import main

main()
