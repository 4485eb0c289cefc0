from router_proxy.cli import main

raise SystemExit(main())
