import sys

from dsqlkit.cli import main

sys.exit(main())
