package options

import (
	"regexp"
	"strconv"
	"strings"
)

// Permission names used by the table.
const (
	// PermHooks is needed to set anything that runs a command as the server user or
	// weakens transport security: the hook scripts and ssl_no_verify webhooks.
	PermHooks = "job.hooks"
)

func ptr(v float64) *float64       { return &v }
func atLeast(lo float64) Range     { return Range{Min: ptr(lo)} }
func between(lo, hi float64) Range { return Range{Min: ptr(lo), Max: ptr(hi)} }
func strs(v ...string) []string    { return v }
func valueAlias(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// clipFamilies are the SimpleTuner families whose text encoders include CLIP, the only
// ones --clip_skip means anything for.
var clipFamilies = []string{"sd1x", "sd2x", "sdxl", "sd3", "flux", "hidream"}

var baseModelPrecisions = []string{
	"no_change", "bf16", "int8-quanto", "int4-quanto", "int2-quanto", "int8-torchao", "int8dq-torchao",
	"int8dq-int4-torchao", "nf4-bnb", "int4-torchao", "fp8-quanto", "fp8uz-quanto", "fp8-native",
	"fp8-torchao", "fp8wo-torchao", "fp8-int4-torchao", "fp8-transformerengine",
}

// noQuantisation are the --base_model_precision values that leave the base model as it
// is; everything else quantises it.
var noQuantisation = map[string]bool{"no_change": true, "bf16": true}

// optionTable returns a fresh copy of every option. families fills the --model_family
// enum. The table is rebuilt per registry so no two registries share mutable state.
func optionTable(families []string) []*Option {
	return []*Option{
		// Model
		{Name: "--model_family", Type: Enum, Values: families, Category: CatModel, Required: true,
			RequiredMessage: "Model family is required",
			Help:            "Model family to train. The list comes from the trainer in use."},
		{Name: "--model_type", Type: Enum, Values: strs("full", "lora"), Default: "full", Category: CatModel,
			Required: true, RequiredMessage: "Model type is required",
			Help: "Train every weight (full) or a low-rank adapter (lora)."},
		{Name: "--model_flavour", Type: String, Category: CatModel,
			Help: "Variant of the model family (dit: tiny, small, base, xl); unset uses the family's default."},
		{Name: "--pretrained_model_name_or_path", Type: String, Category: CatModel, NonEmpty: true,
			Help: "Base weights: a hub repo id (org/name), fetched through the Hugging Face cache, or a local directory in the diffusers layout; unset starts from the flavour's random weights."},
		{Name: "--revision", Type: String, Category: CatModel,
			Help: "Branch, tag or commit of the hub repos to load weights from; unset means main."},
		{Name: "--variant", Type: String, Category: CatModel,
			Help: "Weight-file variant to load, such as fp16 (diffusion_pytorch_model.fp16.safetensors); a component without it loads its plain weights."},
		{Name: "--pretrained_transformer_model_name_or_path", Type: String, Category: CatModel,
			Help: "Take the transformer from this hub id or local directory instead of the base model's."},
		{Name: "--pretrained_transformer_subfolder", Type: String, Default: "transformer", Category: CatModel,
			Help: "Folder of the transformer inside that hub repo or directory; none means its top level."},
		// SimpleTuner defaults to an SDXL VAE and drops it for families that do not use that
		// latent space; an empty value means the base model's own VAE.
		{Name: "--pretrained_vae_model_name_or_path", Type: String, Default: "madebyollin/sdxl-vae-fp16-fix", Category: CatModel,
			AllowEmpty: true,
			Help:       "VAE from another hub id or local directory than the base model's; empty uses the base model's own."},
		{Name: "--output_dir", Type: Path, Default: "simpletuner-results", Category: CatModel, Required: true,
			RequiredMessage: "Output directory is required", NonEmpty: true, OutputRelative: true,
			Help: "Where checkpoints, validation images and logs go; a relative path is under the server's output root."},
		{Name: "--base_model_precision", Type: Enum, Values: baseModelPrecisions, Default: "no_change", Category: CatModel,
			Help: "Quantise the frozen base model (LoRA only); no_change and bf16 keep it as it is."},
		{Name: "--mixed_precision", Type: Enum, Values: strs("no", "fp16", "bf16", "fp8"), Default: "bf16", Category: CatModel,
			Help: "Precision of the forward and backward passes."},
		{Name: "--gradient_checkpointing", Type: Bool, Default: false, Category: CatModel,
			Help: "Recompute activations in the backward pass to save memory."},
		{Name: "--use_ema", Type: Bool, Default: false, Category: CatModel,
			Help: "Keep an exponential moving average of the trained weights."},
		{Name: "--clip_skip", Type: Int, Range: atLeast(0), Families: clipFamilies, Category: CatModel,
			Help: "Skip this many final CLIP text-encoder layers (families with a CLIP encoder only)."},
		{Name: "--tokenizer_max_length", Aliases: strs("--maximum_caption_length"), Type: Int, Range: atLeast(1), Category: CatModel,
			Help: "Longest caption, in tokens; longer captions are truncated."},

		// Data
		{Name: "--data_backend_config", Type: JSON, Category: CatData, Required: true,
			RequiredMessage: "Select a data backend configuration", NonEmpty: true, ConfigRelative: true,
			Help: "Dataloader JSON (multidatabackend.json); a relative .json path is under the configs dir."},
		{Name: "--resolution", Type: Float, Default: 1024.0, Range: Range{Min: ptr(0)}, Category: CatData,
			Help: "Training resolution; its unit depends on --resolution_type."},
		{Name: "--resolution_type", Type: Enum, Values: strs("pixel_area", "pixel", "area"), Default: "pixel_area", Category: CatData,
			Help: "pixel_area: area of a resolution x resolution square; pixel: shorter edge; area: megapixels."},
		{Name: "--caption_dropout_probability", Type: Float, Default: 0.1, Range: between(0, 1), Category: CatData,
			Help: "Chance of training a sample with an empty caption."},
		{Name: "--cache_dir_vae", Type: Path, Category: CatData,
			Help: "Default latent cache directory for datasets that do not set cache_dir_vae."},
		{Name: "--dataloader_prefetch", Type: Bool, Default: false, Category: CatData,
			Help: "Prepare the next batch while the current one trains."},
		{Name: "--conditioning_multidataset_sampling", Type: Enum, Values: strs("combined", "random"), Default: "random", Category: CatData,
			Help: "With several conditioning datasets: use all of them per sample (combined) or one at random."},
		{Name: "--write_batch_size", Type: Int, Default: 128, Range: atLeast(1), Category: CatData,
			Help: "Embeddings written per batch to text-embed caches that do not set their own."},

		// Training schedule
		{Name: "--train_batch_size", Type: Int, Default: 4, Range: between(1, 128), Category: CatTraining,
			Help: "Samples per device per step."},
		{Name: "--gradient_accumulation_steps", Type: Int, Default: 1, Range: atLeast(1), Category: CatTraining,
			Help: "Micro-batches accumulated before each optimizer step."},
		{Name: "--num_train_epochs", Type: Int, Default: 1, Range: atLeast(0), Category: CatTraining, ZeroOnEmpty: true,
			invalidMessage: "Invalid value for num_train_epochs or max_train_steps. Must be numeric.",
			Help:           "Epochs to train; 0 lets --max_train_steps decide. Set exactly one of the two."},
		{Name: "--max_train_steps", Type: Int, Range: atLeast(0), Category: CatTraining, ZeroOnEmpty: true,
			invalidMessage: "Invalid value for num_train_epochs or max_train_steps. Must be numeric.",
			Help:           "Optimizer steps to train; 0 or unset lets --num_train_epochs decide."},
		{Name: "--seed", Type: Int, Range: between(0, 2147483647), Category: CatTraining,
			Help: "Random seed for reproducible runs; unset picks one."},
		{Name: "--max_grad_norm", Type: Float, Default: 2.0, Range: atLeast(0), Category: CatTraining,
			Help: "Clip the gradient norm to this value; 0 disables clipping."},
		{Name: "--snr_gamma", Type: Float, Range: atLeast(0), Category: CatTraining, ZeroOnEmpty: true,
			Help: "Min-SNR loss weighting gamma (5 is a common value); unset or 0 disables it. Families with a noise schedule only."},
		{Name: "--i_know_what_i_am_doing", Type: Bool, Default: false, Category: CatTraining,
			Help: "Keep settings a model family would otherwise force (PixArt's --max_grad_norm 0.01)."},
		{Name: "--resume_from_checkpoint", Type: String, Default: "latest", Category: CatTraining, AllowEmpty: true,
			Help: "latest, a checkpoint-N name, a path, or empty/none to start fresh."},

		// Optimizer
		{Name: "--optimizer", Type: Enum, Values: strs("adamw", "adamw_bf16", "optimi-adamw", "optimi-lion", "optimi-sgd"),
			Default: "adamw_bf16", Category: CatOptimizer, Required: true, RequiredMessage: "Optimizer is required",
			Help: "Optimizer for the trained weights."},
		{Name: "--learning_rate", Type: Float, Default: 4e-7, Range: between(0, 1), Category: CatOptimizer,
			Help: "Peak learning rate (1e-4 notation accepted)."},
		{Name: "--lr_scheduler", Type: Enum,
			Values:       strs("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial", "sine"),
			ValueAliases: valueAlias("cosine_with_warmup", "cosine"),
			Default:      "constant_with_warmup", Category: CatOptimizer,
			Help: "Learning-rate schedule; constant with warm-up steps becomes constant_with_warmup."},
		{Name: "--lr_num_cycles", Type: Int, Default: 1, Range: atLeast(1), Category: CatOptimizer,
			Help: "Hard restarts of the cosine_with_restarts schedule."},
		{Name: "--lr_power", Type: Float, Default: 0.8, Range: atLeast(0), Category: CatOptimizer,
			Help: "Power of the polynomial schedule."},
		{Name: "--adam_beta1", Type: Float, Default: 0.9, Range: between(0, 1), Category: CatOptimizer,
			Help: "First-moment decay of the Adam-family and Lion optimizers."},
		{Name: "--adam_beta2", Type: Float, Default: 0.999, Range: between(0, 1), Category: CatOptimizer,
			Help: "Second-moment decay of the Adam-family and Lion optimizers."},
		{Name: "--adam_weight_decay", Type: Float, Default: 1e-2, Range: atLeast(0), Category: CatOptimizer,
			Help: "Decoupled weight decay."},
		{Name: "--adam_epsilon", Type: Float, Default: 1e-8, Range: Range{Min: ptr(0)}, Category: CatOptimizer,
			Help: "Denominator term of the Adam-family optimizers."},
		{Name: "--lr_warmup_steps", Type: Int, Default: 0, Range: atLeast(0), Category: CatOptimizer, ZeroOnEmpty: true,
			invalidMessage: "Warmup steps must be a whole number.",
			Help:           "Steps over which the learning rate ramps up from 0."},

		// LoRA
		{Name: "--lora_type", Type: Enum, Values: strs("standard", "lycoris"), Default: "standard", ModelTypes: strs("lora"), Category: CatLoRA,
			Help: "Plain LoRA (standard) or a LyCORIS adapter described by --lycoris_config."},
		{Name: "--lora_rank", Type: Int, Default: 16, Range: between(1, 256), ModelTypes: strs("lora"), Category: CatLoRA,
			Help: "Rank of the LoRA matrices."},
		{Name: "--lora_alpha", Type: Float, Range: atLeast(0), ModelTypes: strs("lora"), Category: CatLoRA,
			Help: "LoRA scaling numerator; unset uses the rank."},
		{Name: "--lora_dropout", Type: Float, Default: 0.1, Range: between(0, 1), ModelTypes: strs("lora"), Category: CatLoRA,
			Help: "Dropout on the LoRA path (standard LoRA only)."},
		{Name: "--lycoris_config", Type: JSON, Default: "config/lycoris_config.json", ModelTypes: strs("lora"), Category: CatLoRA,
			ConfigRelative: true,
			Help:           "LyCORIS settings JSON, used when --lora_type=lycoris; a relative .json path is under the configs dir."},

		// Validation
		{Name: "--validation_prompt", Type: String, Category: CatValidation,
			Help: "Prompt rendered at every validation."},
		{Name: "--validation_negative_prompt", Type: String, Default: "blurry, cropped, ugly", AllowEmpty: true, Category: CatValidation,
			Help: "Negative prompt for validation images; may be empty."},
		{Name: "--user_prompt_library", Type: JSON, ConfigRelative: true, Category: CatValidation,
			Help: "JSON file of extra named validation prompts; a relative .json path is under the configs dir."},
		{Name: "--validation_step_interval", Aliases: strs("--validation_steps"), Type: Int, Default: 100, Range: atLeast(1), Category: CatValidation,
			Help: "Validate every this many optimizer steps."},
		{Name: "--validation_resolution", Type: String, Category: CatValidation, check: checkResolutionList,
			Help: "Validation image size: 1024, 1024x768, or a comma-separated list of those; unset: the size of the training images (SimpleTuner's 256 would be far larger than a pixel-space model's own resolution)."},
		{Name: "--validation_seed", Type: Int, Range: atLeast(0), Category: CatValidation,
			Help: "Seed for validation sampling; unset picks one."},
		{Name: "--validation_guidance", Type: Float, Default: 7.5, Range: between(1, 30), Category: CatValidation,
			Help: "Classifier-free guidance scale for validation images."},
		{Name: "--validation_num_inference_steps", Type: Int, Default: 30, Range: atLeast(1), Category: CatValidation,
			Help: "Sampler steps per validation image."},
		{Name: "--validation_noise_scheduler", Type: String, Category: CatValidation,
			Help: "Sampler for validation images: ddim, euler, dpm++ (latent families; dit always samples with Euler); unset uses the family's default."},
		{Name: "--validation_preview", Type: Bool, Default: false, Category: CatValidation,
			Help: "Stream intermediate sampler frames as validation.image events."},
		{Name: "--validation_preview_steps", Type: Int, Default: 1, Range: atLeast(1), Category: CatValidation,
			Help: "With --validation_preview: emit step 1, then every this many steps, then the last step."},
		{Name: "--validation_method", Type: Enum, Values: strs("simpletuner-local", "external-script"),
			ValueAliases: valueAlias("builtin", "simpletuner-local", "built-in", "simpletuner-local"),
			Default:      "simpletuner-local", Category: CatValidation,
			Help: "Built-in validation (simpletuner-local) or --validation_external_script."},
		{Name: "--validation_external_script", Type: String, Permission: PermHooks, Category: CatValidation,
			Help: "Command run instead of built-in validation; placeholders like {local_checkpoint_path} and {global_step}."},
		{Name: "--validation_external_background", Type: Bool, Default: false, Category: CatValidation,
			Help: "Run the external validation script without waiting for it."},

		// Checkpoints
		{Name: "--checkpoint_step_interval", Aliases: strs("--checkpointing_steps"), Type: Int, Default: 500, Range: atLeast(1), Category: CatCheckpoints,
			Help: "Save a checkpoint every this many optimizer steps."},
		{Name: "--checkpoint_epoch_interval", Type: Int, Range: atLeast(1), Category: CatCheckpoints,
			Help: "Save a checkpoint every this many epochs."},
		{Name: "--checkpoints_total_limit", Type: Int, Default: 5, Range: atLeast(0), Category: CatCheckpoints,
			Help: "Keep at most this many checkpoints, deleting the oldest; 0 keeps all."},
		{Name: "--checkpointing_rolling_steps", Type: Int, Default: 0, Range: atLeast(0), Category: CatCheckpoints,
			Help: "Also save a rolling checkpoint-N-rolling every this many steps; 0 disables."},
		{Name: "--checkpoints_rolling_total_limit", Type: Int, Default: 1, Range: atLeast(0), Category: CatCheckpoints,
			Help: "Rolling checkpoints to keep."},
		{Name: "--checkpointing_use_tempdir", Type: Bool, Default: false, Category: CatCheckpoints,
			Help: "Write checkpoint-N-tmp and rename it when complete."},
		{Name: "--delete_invalid_checkpoints", Type: Bool, Default: false, Category: CatCheckpoints,
			Help: "When resuming, delete checkpoints that fail to load and try the next latest."},

		// Hook scripts
		{Name: "--post_checkpoint_script", Type: String, Permission: PermHooks, ServerOnly: true, Category: CatHooks,
			Help: "Command the server runs after each checkpoint is complete; placeholders like {local_checkpoint_path}."},
		{Name: "--post_upload_script", Type: String, Permission: PermHooks, ServerOnly: true, Category: CatHooks,
			Help: "Command the server runs after each upload, with {remote_checkpoint_path}."},

		// Tracking and webhooks
		{Name: "--report_to", Type: List, Values: knownTrackers, Default: []string{"none"}, Category: CatTracking,
			Help: "Trackers to log metrics to (comma list); an unavailable tracker is skipped with a warning."},
		{Name: "--tracker_project_name", Aliases: strs("--project_name"), Type: String, Default: "simpletuner", Category: CatTracking,
			Help: "Project name for trackers and hook placeholders."},
		{Name: "--tracker_run_name", Type: String, Default: "simpletuner-testing", Category: CatTracking,
			Help: "Run name for trackers and hook placeholders."},
		{Name: "--webhook_config", Type: JSON, ConfigRelative: true, ServerOnly: true, Category: CatTracking,
			check: checkWebhookConfig,
			Help:  "Webhooks as inline JSON (a list of {webhook_type, callback_url, log_level}) or a .json path under the configs dir."},
		{Name: "--webhook_reporting_interval", Type: Int, Range: atLeast(0), ServerOnly: true, Category: CatTracking,
			Help: "Send progress webhooks at most every this many seconds; lifecycle, checkpoint, validation and error events always go out."},

		// Hardware
		{Name: "--num_processes", Type: Int, Default: 1, Range: atLeast(1), Category: CatHardware,
			Help: "GPUs (processes) the job uses."},
		{Name: "--accelerate_visible_devices", Type: List, Category: CatHardware, check: checkDeviceList,
			Help: "Preferred GPU indices or UUIDs (comma list); the server sets the ones it allocated."},

		// Publishing
		{Name: "--push_to_hub", Type: Bool, Default: false, Category: CatPublishing,
			Help: "Upload the final model to the hub repository --hub_model_id."},
		{Name: "--push_checkpoints_to_hub", Type: Bool, Default: false, Category: CatPublishing,
			Help: "Also upload every checkpoint (needs --push_to_hub)."},
		{Name: "--hub_model_id", Type: String, Category: CatPublishing,
			Help: "Hub repository to upload to; also the {huggingface_path} hook placeholder."},
		{Name: "--publishing_config", Type: JSON, ConfigRelative: true, Category: CatPublishing,
			Help: "Publishing providers as inline JSON or a .json path under the configs dir."},
	}
}

var resolutionItem = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(x[0-9]+)?$`)

// checkResolutionList accepts "1024", "48x32" and comma lists of those.
func checkResolutionList(v any) string {
	s, _ := v.(string)
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if !resolutionItem.MatchString(part) {
			return "want a size like 1024 or 1024x768, or a comma-separated list of them; got " + strconv.Quote(s)
		}
		for _, n := range strings.Split(part, "x") {
			if f, err := strconv.ParseFloat(n, 64); err != nil || f <= 0 {
				return "sizes must be greater than 0; got " + strconv.Quote(s)
			}
		}
	}
	return ""
}

var deviceItem = regexp.MustCompile(`^([0-9]+|GPU-[0-9A-Fa-f-]+|MIG-[0-9A-Fa-f/-]+)$`)

// checkDeviceList accepts GPU indices and NVML UUIDs.
func checkDeviceList(v any) string {
	l, _ := v.([]string)
	for _, d := range l {
		if !deviceItem.MatchString(d) {
			return "want GPU indices (0,1) or UUIDs (GPU-…); got " + strconv.Quote(d)
		}
	}
	return ""
}
