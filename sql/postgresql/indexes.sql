-- Secondary indexes for the tables the pipeline queries (a subset of OHDSI's CDM 5.4
-- indexes). Cohort queries join event tables to person and to concept sets by concept id;
-- the resolver looks up image_occurrence and measurement per person.
CREATE INDEX IF NOT EXISTS idx_observation_period_person ON @cdm_schema.observation_period (person_id);
CREATE INDEX IF NOT EXISTS idx_visit_person ON @cdm_schema.visit_occurrence (person_id);
CREATE INDEX IF NOT EXISTS idx_condition_person ON @cdm_schema.condition_occurrence (person_id);
CREATE INDEX IF NOT EXISTS idx_condition_concept ON @cdm_schema.condition_occurrence (condition_concept_id);
CREATE INDEX IF NOT EXISTS idx_procedure_person ON @cdm_schema.procedure_occurrence (person_id);
CREATE INDEX IF NOT EXISTS idx_procedure_concept ON @cdm_schema.procedure_occurrence (procedure_concept_id);
CREATE INDEX IF NOT EXISTS idx_measurement_person ON @cdm_schema.measurement (person_id);
CREATE INDEX IF NOT EXISTS idx_measurement_concept ON @cdm_schema.measurement (measurement_concept_id);
CREATE INDEX IF NOT EXISTS idx_observation_person ON @cdm_schema.observation (person_id);
CREATE INDEX IF NOT EXISTS idx_image_occurrence_person ON @cdm_schema.image_occurrence (person_id);
CREATE INDEX IF NOT EXISTS idx_image_occurrence_procedure ON @cdm_schema.image_occurrence (procedure_occurrence_id);
CREATE INDEX IF NOT EXISTS idx_image_feature_occurrence ON @cdm_schema.image_feature (image_occurrence_id);
CREATE INDEX IF NOT EXISTS idx_concept_ancestor_ancestor ON @vocab_schema.concept_ancestor (ancestor_concept_id);
CREATE INDEX IF NOT EXISTS idx_concept_ancestor_descendant ON @vocab_schema.concept_ancestor (descendant_concept_id);
CREATE INDEX IF NOT EXISTS idx_cohort_definition_subject ON @results_schema.cohort (cohort_definition_id, subject_id);
