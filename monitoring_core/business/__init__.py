"""Business intelligence: events, KPIs, MRR, funnels, adoption, retention and early warning."""
