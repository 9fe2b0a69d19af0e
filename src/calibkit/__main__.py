from calibkit.cli.main import main

raise SystemExit(main())
