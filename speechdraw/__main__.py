from speechdraw.cli import main

raise SystemExit(main())
