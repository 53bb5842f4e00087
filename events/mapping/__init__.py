"""Gateway documents → our payment facts, shared by the ingress (webhook bodies) and the reconciler (the
gateways' list APIs), so that both produce the same fact — and the same dedupe key — for one object.

    fields.py    reading fields from a gateway document, with errors that name the field
    razorpay.py  Razorpay webhook bodies (and API items shaped as one)
    stripe.py    Stripe Event objects (delivered or listed by /v1/events)
    resolve.py   a mapped fact + the signing account → the envelope to publish
"""
