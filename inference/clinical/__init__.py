"""Clinical content computed for every ECG in the worker: measurements, coded statements, the report.

numpy/scipy/neurokit2 only (docs/style.md G14: the Django service imports the result types, never torch).

- ``types``: what is computed (measurements, coded findings, the grounded report); the interface
  between the signal processing, the statement rules, the report builder, storage and FHIR.
- ``measurements``: global intervals, axes, ST and rhythm from representative beats of all leads.
- ``statements``: AHA/ACC/HRS rhythm and conduction statements (SNOMED CT coded) from measurements.
- ``intended_use``: pacing, patient age and electrode reversal, checked before the models speak.
- ``report``: one verdict and the report text, built from coded findings; the decoder-text checker.
"""
