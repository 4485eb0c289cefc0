"""Selection: the algorithm a decision uses to pick one model among its candidates."""
