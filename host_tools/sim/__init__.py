"""Virtual board pair: supervisor daemon, wire, and its client."""
