from cosinetui.cli import main

main()
