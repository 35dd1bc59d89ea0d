import sys

from puppet_master.cli import main

sys.exit(main())
