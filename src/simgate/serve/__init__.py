"""Process lifecycles: the server alone, several server workers, or server and agent in one."""
