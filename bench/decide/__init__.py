"""Decisions from records: effect sizes with intervals (stats), the sequential plan (sequential),
two result sets compared per cell and metric (compare), accuracy across seeds and frameworks
(accuracy), the RNN-vs-CNN verdict (claim), A/A noise (noise)."""
