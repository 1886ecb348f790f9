import sys

from mhpo_vl.cli import main

sys.exit(main())
