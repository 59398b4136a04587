"""The training-recipe study (issues 8, 20); its records and write-up: reports/recipe/."""
