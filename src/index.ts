/**
 * advtext public API: the stages, the model and the pipeline, for composing your own stage graph.
 * See README "Composing stages in code".
 */
export * from "./errors.ts"
export { rng, permutation, type Rng } from "./random.ts"
export { selectBackend, type ActiveBackend, type BackendName, type BlasChoice, type EngineOptions } from "./engine/backend.ts"
export { fusedEngine, type ModelEngine, REFERENCE_ENGINE } from "./engine/model-engine.ts"
export { loadBlas, useBlasMatMul, type Blas } from "./engine/blas.ts"
export { tidy } from "./engine/tidy.ts"

export type { DataLocation, LabeledCorpus, LabeledDoc, UnlabeledSource } from "./data/types.ts"
export { imdbUnlabeled, loadAgNews, loadCustom, loadDbpedia, loadElec, loadImdb, loadRcv1, loadRottenTomatoes } from "./data/sources.ts"

export { tokenize, tokenizeStage, type TokenizeOptions, type TokenizerKind } from "./stages/tokenize.ts"
export { EOS, FrequencyTable, Vocabulary } from "./stages/vocabulary.ts"
export {
  batchIndicesAt,
  batchesPerEpoch,
  encodeDocument,
  evaluationBatches,
  makeBatch,
  stepBatches,
  trainingBatches,
  type Batch,
  type EncodedDoc,
  type StepBatches
} from "./stages/batch.ts"
export {
  adversarialPerturbation,
  adversarialTerm,
  beforeEosMask,
  BUILT_IN_METHODS,
  classificationLoss,
  classificationLosses,
  DEFAULT_PERTURBATION,
  gaussian,
  klDivergence,
  methodDefinition,
  METHODS,
  normalizeEmbeddings,
  perturbedLosses,
  randomPerturbation,
  randomTerm,
  randomUnlabeledTerm,
  scaleL2,
  usesLabeledPerturbation,
  usesUnlabeled,
  virtualAdversarialPerturbation,
  virtualTerm,
  type LossTerm,
  type Method,
  type MethodDefinition,
  type PerturbationOptions,
  type PerturbationSize,
  type PreparedTerm,
  type Stream,
  type TermInput
} from "./method/method.ts"
export {
  batchTensors,
  embeddingTable,
  prefixState,
  stepGradients,
  trainStep,
  type StepGradients,
  type StepMetrics,
  type StepOptions,
  type StepResult
} from "./stages/train.ts"
export {
  evaluate,
  evaluatePerturbationLosses,
  type Evaluation,
  type EvaluationOptions,
  type PerturbationEvaluation,
  type PerturbationLossOptions
} from "./stages/evaluate.ts"
export { LmSchedule, lmEvaluationBatches, reverseIds, type LmBatch } from "./stages/lm-batch.ts"
export { fullSoftmaxLoss, sampledSoftmaxLoss, UnigramSampler, type Candidates } from "./stages/sampled-softmax.ts"
export {
  evaluateLanguageModel,
  lmHeadParams,
  lmSamplerCounts,
  lmTrainStep,
  zeroCarriedState,
  type CarriedState,
  type LmEvaluation,
  type LmEvaluationOptions,
  type LmStepMetrics,
  type LmStepOptions
} from "./stages/pretrain.ts"

export * as model from "./model/classifier.ts"
export {
  applyGradients,
  clipByGlobalNorm,
  createTrainState,
  disposeTrainState,
  learningRateAt,
  OPTIMIZER_DEFAULTS,
  type OptimizerConfig,
  type TrainState
} from "./model/optimizer.ts"
export { CHECKPOINT, extraOf, readCheckpoint, trainStateFromCheckpoint, writeCheckpoint } from "./model/checkpoint.ts"
export { cosineSimilarity, nearestNeighbors, type Neighbor } from "./model/neighbors.ts"

export { DEFAULTS, defineConfig, resolveConfig, type Config, type ConfigInput } from "./pipeline/config.ts"
export { prepareData, splitCorpus, type PreparedData } from "./pipeline/data.ts"
export { runPipeline, type RunOptions, type RunOutcome, type RunSummary, type StopSignal } from "./pipeline/run.ts"
export { runPretraining, type PretrainOutcome, type PretrainSummary } from "./pipeline/pretrain.ts"
export { classifierTask } from "./pipeline/run.ts"
export { languageModelTask } from "./pipeline/pretrain.ts"
export { runTrainingLoop, type LoopTask, type RunContext, type TrainingTask } from "./pipeline/loop.ts"
export { fileRunStorage, type RunStorageShape } from "./pipeline/run-dir.ts"
export {
  DataSources,
  dataSourcesLayer,
  type DataSourcesShape,
  progressLayer,
  RunProgress,
  RunStorage,
  runStorageLayer,
  Tokenizer,
  tokenizerLayer,
  type TokenizerShape
} from "./pipeline/services.ts"
export { pretrainedDir, pretrainedNames, restorePretrained } from "./pipeline/restore.ts"
export { consoleProgress, silentProgress, type Progress } from "./pipeline/progress.ts"

export { loadClassifier, openClassifier, type Classifier, type ClassifyProgress, type LoadOptions, type Prediction } from "./use/classifier.ts"
export { readInputs, type InputFormat, type InputText } from "./use/inputs.ts"
export { formatScores, score, type ClassScores, type Scores } from "./use/scores.ts"
export { buildLayersModel, exportRun, tokenizerModule } from "./use/export.ts"
export {
  DEFAULT_WORDS,
  experimentRunDirs,
  neighborsOfRuns,
  readMetrics,
  resolveRuns,
  runNeighbors,
  type MetricsLog,
  type RunInfo,
  type WordNeighbors
} from "./pipeline/inspect.ts"
