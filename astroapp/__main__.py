from astroapp.cli import main

raise SystemExit(main())
