"""Health checks: pure status rules (`rules`), runners (`probes`), SQL (`store`), rounds (`runner`)."""
