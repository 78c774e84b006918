from clapdex.cli import main

raise SystemExit(main())
