"""Clinician review of AI findings: one Review per analysed ECG in a queue, append-only revisions.

Two queues share one model (and one review page, one set of actions, one export):
``flagged`` holds the ECGs whose one verdict (the interpretation's, or the detector's flag where no
interpretation ran) is not normal; ``reannotation`` holds normal ECGs the foundation model's active
learning ranked worth a second look (their re-annotation value).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from cds.analysis.models import AnalysisJob, Prediction
from cds.core.models import BaseModel, Organization
from cds.ecg.models import EcgRecording


class CareTeam(BaseModel):
    """Clinicians who may see the ECGs of one organisation, narrowed to some sources when it lists any.

    A source is the API client (``EcgRecording.received_from``) that sent the ECG: a ward's feed.
    """

    name = models.CharField(max_length=128, unique=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="care_teams")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="care_teams", blank=True)

    def __str__(self) -> str:
        return self.name


class CareTeamSource(models.Model):
    """One source (``EcgRecording.received_from``) a care team covers."""

    team = models.ForeignKey(CareTeam, on_delete=models.CASCADE, related_name="sources")
    source = models.CharField(max_length=128)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "source"], name="care_team_source_unique")]

    def __str__(self) -> str:
        return f"{self.team}: {self.source}"


class Review(BaseModel):
    """The clinician review of one ECG (``prediction`` is the detector's: score, anomaly map, intervals).

    Legal transitions (made only in ``cds.review.services``):
    pending → claimed (claim) → pending (unclaim); claimed → accepted | rejected;
    accepted ↔ rejected (verdict changed before signing); accepted | rejected → signed;
    signed → amended (any change after signing: awaiting a new signature) → signed. The clinical
    content (verdict, reason, intervals, labels, report text) lives in append-only
    ``ReviewRevision`` rows; ``current`` points at the latest one, ``signed_revision`` at the
    latest signed one: what the EHR, the CDS cards and the training export use.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        CLAIMED = "claimed"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        SIGNED = "signed"
        AMENDED = "amended", "amended, awaiting signature"

    class Queue(models.TextChoices):
        FLAGGED = "flagged"
        REANNOTATION = "reannotation"

    job = models.OneToOneField(AnalysisJob, on_delete=models.PROTECT, related_name="review")
    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="reviews")
    recording = models.ForeignKey(EcgRecording, on_delete=models.PROTECT, related_name="reviews")
    queue = models.CharField(max_length=16, choices=Queue.choices, default=Queue.FLAGGED)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Worklist order: urgent first (the interpretation's urgency), then ``priority``: the score over
    # the operating point (flagged) or the active-learning re-annotation value (re-annotation queue).
    urgent = models.BooleanField(default=False)
    priority = models.FloatField(default=0.0)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="claimed_reviews"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)  # first accept/reject: time to review
    signed_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="signed_reviews"
    )
    signature_count = models.PositiveIntegerField(default=0)
    current = models.ForeignKey("ReviewRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    signed_revision = models.ForeignKey(
        "ReviewRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        indexes = [
            # The worklist filters by queue and status, then orders by urgency and priority.
            models.Index(fields=["queue", "status", "-urgent", "-priority"], name="review_worklist_urgent"),
            # The unfiltered worklist walks this in order and stops after one page (no sort of every row).
            models.Index(fields=["queue", "-urgent", "-priority", "created_at"], name="review_worklist_urgent_order"),
        ]
        permissions = [
            ("sign_review", "Can sign a review (senior clinician)"),
            ("view_quality", "Can view quality metrics, prediction audit and exports"),
        ]

    def __str__(self) -> str:
        return f"Review {self.pk} of {self.recording} ({self.status})"

    @property
    def is_open(self) -> bool:
        """Return True while nobody has given a verdict."""
        return self.status in {self.Status.PENDING, self.Status.CLAIMED}


class ReviewRevision(models.Model):
    """One change to a review, carrying the full clinical state after it. Never updated or deleted."""

    class Kind(models.TextChoices):
        AI = "ai", "AI proposal"
        ACCEPT = "accept"
        REJECT = "reject"
        INTERVALS = "intervals", "intervals corrected"
        LABELS = "labels", "labels assigned"
        REPORT = "report", "report edited"
        SIGN = "sign"

    class Verdict(models.TextChoices):
        NONE = "", "no verdict"
        ACCEPT = "accept", "accepted (AI call confirmed)"
        REJECT = "reject", "rejected (AI call wrong)"

    review = models.ForeignKey(Review, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    verdict = models.CharField(max_length=8, choices=Verdict.choices, blank=True, default="")
    reason = models.TextField(blank=True)
    # [{lead, start_ms, end_ms, score?}] as in Prediction.intervals.
    intervals = models.JSONField(default=list, blank=True)
    scp_labels = models.JSONField(default=list, blank=True)  # PTB-XL SCP statement codes
    report_text = models.TextField(blank=True)
    # On a signature: what signing meant, as the signer was shown it (21 CFR 11.50(a)(3)).
    signature_meaning = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="review_revisions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["review", "number"], name="review_revision_number_unique")]
        ordering = ["review", "number"]

    def __str__(self) -> str:
        return f"Review {self.review_id} revision {self.number} ({self.kind})"


class QualityPrediction(Prediction):
    """Prediction seen by quality auditors (admin list with provenance, verdict and CSV export)."""

    class Meta:
        proxy = True
        verbose_name = "prediction audit"
        verbose_name_plural = "prediction audit"


class ReannotationReview(Review):
    """Review in the re-annotation queue (separate admin worklist)."""

    class Meta:
        proxy = True
        verbose_name = "re-annotation item"
        verbose_name_plural = "re-annotation queue"


class DriftAlarm(BaseModel):
    """A day on which one site's inputs or scores moved away from its reference window (issue 19).

    Raised by ``cds.review.drift`` (``manage.py check_drift``); one per site, day and feature, so a
    rerun raises nothing twice. Open alarms show as a banner on the admin and as
    ``cds_quality_drift_alarms_open``; a quality officer acknowledges one once acted on.
    """

    site = models.CharField(max_length=200)  # "organisation/source", as in the quality report
    day = models.DateField()
    feature = models.CharField(max_length=32)  # amplitude_range_uv, sampling_rate, lead_set, quality_flags, score
    test = models.CharField(max_length=8)  # "ks" or "psi"
    statistic = models.FloatField()
    p_value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    n_reference = models.PositiveIntegerField()
    n_day = models.PositiveIntegerField()
    details = models.JSONField(default=dict, blank=True)  # reference vs day summaries, for the banner
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "day", "feature"], name="drift_alarm_unique")]

    def __str__(self) -> str:
        return f"drift of {self.feature} at {self.site} on {self.day}"

    def as_json(self) -> dict[str, Any]:
        """Return the alarm as the quality report lists it."""
        return {
            "day": self.day.isoformat(),
            "feature": self.feature,
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "n_reference": self.n_reference,
            "n_day": self.n_day,
            "details": self.details,
            "acknowledged": self.acknowledged_at is not None,
        }


class ModelCandidate(BaseModel):
    """A model version proposed for serving, with acceptance criteria registered before its results are seen.

    ``criteria``: [{"figure": "sensitivity"|"specificity"|"ppv"|"auroc", "bound": "ci_low"|"value",
    "compare": "serving" | <number>, "margin": <number, optional>}]: the candidate's bound of the
    figure (on signed verdicts) must reach the serving version's point value (minus ``margin``) or
    the number. ``min_signed``: fewer signed verdicts than this and the promotion is refused.

    A candidate that names Triton versions (``detector_version`` and/or ``foundation_version``; the
    other model at its serving version) is registered in ``shadow``: it runs on every analysed ECG
    after the served analysis (``cds.pipeline.shadow``) until it is promoted or retired.
    Transitions: registered | shadow → promoted → retired; registered | shadow → retired.
    """

    class Status(models.TextChoices):
        REGISTERED = "registered"
        SHADOW = "shadow"
        PROMOTED = "promoted"
        RETIRED = "retired"

    model_name = models.CharField(max_length=64)
    model_version = models.CharField(max_length=64)
    criteria = models.JSONField(default=list)
    min_signed = models.PositiveIntegerField(default=50)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REGISTERED)
    # Triton model versions (numbers, as in TRITON_MODEL_VERSIONS) the candidate runs in shadow;
    # blank: that model at its serving version.
    detector_version = models.CharField(max_length=16, blank=True)
    foundation_version = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_name", "model_version"], name="model_candidate_unique")]

    def __str__(self) -> str:
        return f"{self.model_name}@{self.model_version} ({self.status})"


class PromotionDecision(BaseModel):
    """One run of ``promote_model``: promoted or refused, with every figure it was decided on."""

    candidate = models.ForeignKey(ModelCandidate, on_delete=models.PROTECT, related_name="decisions")
    serving_version = models.CharField(max_length=64, blank=True)
    promoted = models.BooleanField()
    figures = models.JSONField(default=dict)  # per criterion: candidate bound, serving value, pass/fail
    decided_by = models.CharField(max_length=150, blank=True)

    def __str__(self) -> str:
        return f"{'promoted' if self.promoted else 'refused'}: {self.candidate}"


class SiteRecalibration(BaseModel):
    """A per-site recalibration of the served combined probability, for one combiner version (issue 19).

    Fitted by ``cds.review.recalibration`` (``manage.py fit_site_recalibration``) on the site's signed
    verdicts; immutable once fitted (a new fit is a new ``version``): only the status, who approved it
    and when may change. draft → approved (by a quality auditor; the served verdict of the site uses
    it from then on) → retired (a later approval for the site replaced it).
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "draft, awaiting approval"
        APPROVED = "approved"
        RETIRED = "retired"

    MUTABLE_FIELDS = frozenset({"status", "approved_by", "approved_at", "retired_at", "updated_at"})

    site = models.CharField(max_length=200)  # "organisation/source", as in the quality report
    combiner_version = models.CharField(max_length=128)  # the verdict combiner whose probability it maps
    version = models.PositiveIntegerField()  # 1, 2, ... per site and combiner version
    method = models.CharField(max_length=32)  # "platt-logit": sigmoid(slope * logit(p) + intercept)
    parameters = models.JSONField(default=dict)
    n = models.PositiveIntegerField()  # signed verdicts fitted on
    n_abnormal = models.PositiveIntegerField()
    window_start = models.DateTimeField()  # first and last served verdict fitted on
    window_end = models.DateTimeField()
    ece_before = models.FloatField()  # ECE of the raw combined probability on the same verdicts
    ece_after = models.FloatField()  # ECE of out-of-fold recalibrated probabilities (cross-validated)
    figures = models.JSONField(default=dict)  # folds, reliability tables before/after, since
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "combiner_version", "version"], name="site_recalibration_version"),
            # The served verdict must never have two artefacts to choose from.
            models.UniqueConstraint(
                fields=["site"], condition=models.Q(status="approved"), name="site_recalibration_one_approved"
            ),
        ]
        permissions = [("approve_siterecalibration", "Can approve a site recalibration (quality auditor)")]

    def __str__(self) -> str:
        return f"recalibration {self.site} v{self.version} for {self.combiner_version} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse to change a fitted artefact: only the approval fields may be saved after creation."""
        update_fields = kwargs.get("update_fields")
        if self.pk is not None and (update_fields is None or not set(update_fields) <= self.MUTABLE_FIELDS):
            raise ValueError("a fitted recalibration is immutable: fit a new version instead")
        super().save(*args, **kwargs)


class IssuedCard(models.Model):
    """A CDS Hooks card we served: its uuid, the prediction it was made from and the organisation shown it.

    Recorded when the card is served so that feedback resolves the uuid by lookup (the uuid is a
    hash of the prediction, not reversible), and only for the organisation the card was served to.
    """

    uuid = models.UUIDField(primary_key=True)
    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"card {self.uuid}"


class CardFeedback(BaseModel):
    """One CDS Hooks feedback item: what a clinician did with a card (accepted, or overridden and why).

    Unique per card, outcome time and client: an EHR resending the same feedback stores nothing twice.
    """

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted"
        OVERRIDDEN = "overridden"

    card = models.ForeignKey(IssuedCard, on_delete=models.CASCADE, related_name="feedback")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    client_id = models.CharField(max_length=128, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason_system = models.CharField(max_length=200, blank=True)
    reason_code = models.CharField(max_length=64, blank=True)
    reason_display = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    accepted_suggestions = models.JSONField(default=list, blank=True)
    outcome_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["card", "outcome_at", "client_id"], name="card_feedback_unique")]

    def __str__(self) -> str:
        return f"{self.outcome} on {self.card_id}"
