import sys

from sidbench.cli import main

sys.exit(main())
