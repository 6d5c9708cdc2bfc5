"""The analyses, one module each: its typed result, the function that computes it, its figure and its report
section.  :data:`STEPS` is the report order; a step's ``group`` says which steps share a process (sampling steps
each get their own, the model-free ones run in the parent)."""

from .base import Context, Failed, Skipped, Step, StepResult, timed_run
from .class_evidence import CLASS_EVIDENCE_STEP, ClassEvidenceResult
from .comparison import AGREEMENT_STEP, DIFFERENCE_STEP, AgreementResult, DifferenceResult
from .metacog_observed import OBSERVED_STEP, ObservedMetacognition
from .metad import METAD_AUTH_STEP, METAD_CLASS_STEP, MetadResult
from .morph import MORPH_STEP, MorphResult
from .mrmc import MRMC_STEP, MRMCResult
from .sdt import POWER_STEP, SDT_STEP, Headline, PowerResult, SDTResult

STEPS: tuple[Step, ...] = (SDT_STEP, POWER_STEP, MORPH_STEP, CLASS_EVIDENCE_STEP, OBSERVED_STEP, METAD_AUTH_STEP,
                           METAD_CLASS_STEP, AGREEMENT_STEP, DIFFERENCE_STEP, MRMC_STEP)

__all__ = ["STEPS", "AgreementResult", "ClassEvidenceResult", "Context", "DifferenceResult", "Failed", "Headline",
           "MRMCResult", "MetadResult", "MorphResult", "ObservedMetacognition", "PowerResult", "SDTResult", "Skipped", "Step",
           "StepResult", "timed_run"]
