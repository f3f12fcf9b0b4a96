"""The ablation lab: read a plan, map it onto config changes, run variants x seeds, report."""
