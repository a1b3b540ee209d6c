-- Reference radiogenomics cohort (id 1), hand-written: adults at their first glioma diagnosis
-- (concept 2000000100 and its descendants), inside an observation period, with an MGMT
-- measurement (2000000201) and an MRI of the brain (37311324) from 30 days before to 365 days
-- after the index. The cohort ends at the end of that observation period.
-- Placeholders: @cdm_schema, @vocab_schema (substituted with quoted schema references).
WITH glioma AS (
    SELECT c.concept_id FROM @vocab_schema.concept c WHERE c.concept_id = 2000000100
    UNION
    SELECT c.concept_id
    FROM @vocab_schema.concept c
    JOIN @vocab_schema.concept_ancestor ca ON ca.descendant_concept_id = c.concept_id
    WHERE ca.ancestor_concept_id = 2000000100 AND c.invalid_reason IS NULL
),
first_diagnosis AS (
    SELECT person_id, condition_start_date AS index_date,
           row_number() OVER (PARTITION BY person_id
                              ORDER BY condition_start_date, condition_occurrence_id) AS ordinal
    FROM @cdm_schema.condition_occurrence
    WHERE condition_concept_id IN (SELECT concept_id FROM glioma)
)
SELECT d.person_id AS subject_id,
       d.index_date AS cohort_start_date,
       op.observation_period_end_date AS cohort_end_date
FROM first_diagnosis d
JOIN @cdm_schema.observation_period op
  ON op.person_id = d.person_id
 AND d.index_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date
JOIN @cdm_schema.person p ON p.person_id = d.person_id
WHERE d.ordinal = 1
  AND EXTRACT(YEAR FROM d.index_date) - p.year_of_birth >= 18
  AND EXISTS (
      SELECT 1 FROM @cdm_schema.measurement m
      WHERE m.person_id = d.person_id
        AND m.measurement_concept_id = 2000000201
        AND m.measurement_date BETWEEN d.index_date - 30 AND d.index_date + 365)
  AND EXISTS (
      SELECT 1 FROM @cdm_schema.procedure_occurrence po
      WHERE po.person_id = d.person_id
        AND po.procedure_concept_id = 37311324
        AND po.procedure_date BETWEEN d.index_date - 30 AND d.index_date + 365)
