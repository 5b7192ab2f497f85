from qbhook.cli import main

main()
