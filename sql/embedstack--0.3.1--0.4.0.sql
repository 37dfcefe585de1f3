-- embedstack 0.3.1 -> 0.4.0: serving that holds up inside a real application (issue 19). Only
-- what changed; each change says why. The upgrade-equals-fresh-install test
-- (pgrx-tests/tests/operations_lifecycle.rs, from 0.3.0 through 0.3.1) compares the result with a
-- fresh 0.4.0 install, object by object.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.4.0'" to load this file. \quit
