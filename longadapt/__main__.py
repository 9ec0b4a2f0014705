from longadapt.cli import main

raise SystemExit(main())
