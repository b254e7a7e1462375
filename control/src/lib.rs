//! Control plane (DESIGN §10): the `control` CLI and the control-topic listener every service runs. Comes with the control-plane issue.
