"""The app's server side: who may do what, visitors' workspaces, jobs in child processes."""
