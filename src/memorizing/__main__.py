from memorizing.cli import main

raise SystemExit(main())
