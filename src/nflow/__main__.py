import sys

from nflow.cli import main

sys.exit(main())
