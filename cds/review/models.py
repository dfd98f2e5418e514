"""Clinician review of AI findings: one Review per analysed ECG in a queue, append-only revisions.

Two queues share one model (and one review page, one set of actions, one export):
``flagged`` holds the ECGs whose one verdict (the interpretation's, or the detector's flag where no
interpretation ran) is not normal; ``reannotation`` holds normal ECGs the foundation model's active
learning ranked worth a second look (their re-annotation value).
"""

from __future__ import annotations

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
