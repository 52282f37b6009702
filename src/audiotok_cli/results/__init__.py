"""What runs scored and how they compare: `eval`, `runs`, `compare`, `report` and their figures."""
