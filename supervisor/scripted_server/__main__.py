"""`python -m supervisor.scripted_server --script FILE ...`"""

import sys

from supervisor.scripted_server.cli import main

sys.exit(main())
