"""Capacity: the scaling policy every autoscaling manifest and the simulator read
(:mod:`control_plane.capacity.policy`) and the cost model (:mod:`control_plane.capacity.cost`)."""
