"""Pictures of results (Pareto fronts, labelled image grids), drawn with Pillow. No ComfyUI here."""
