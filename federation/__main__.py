import sys

from federation.cli.main import main

sys.exit(main())
