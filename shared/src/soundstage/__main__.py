import sys

from soundstage.cli import main

sys.exit(main())
