"""modelpool on Ray Serve (the ``ray`` extra): the only package that imports Ray.

``deployment.serve_on_ray`` is ``modelpool serve --ray``: one ``ModelPool`` per Ray
Serve replica (``replica.PoolReplica``), an OpenAI ingress in front, and a request
router (``router.ModelPoolRouter``) that ranks replicas by what they hold
(``modelpool.cluster.routing``). ``replica`` and ``asgi`` import no Ray themselves.
"""
